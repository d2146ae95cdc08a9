"""Several people in one picture: every face detected (`faces`), assigned to people by the Hungarian assignment
(`assign`: found, missing, unknown, swaps, merges, duplicates), REF / GEN / people.json readers (`inputs`), the
models' embeddings of reference photos and face crops (`embedding`), `styleid score --people` as a function
(`run.score_people`) and WithAnyone's MultiID-Bench layout with its copy-paste measure (`multiid`)."""
