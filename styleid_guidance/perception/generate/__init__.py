"""`styleid generate`: StyleBench-S data, photos × stylizers × strength levels (see docs/GENERATE.md).

    cli      the command and its flags        engine   the resumable, multi-process run
    models   the stylizers a run builds       pairs    the pair lists written beside the images
"""
