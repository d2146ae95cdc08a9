"""Faces: detection, 5-point alignment and the differentiable face crop (`detection`), and the insightface
front end the upstream adapters use (`insightface_app`: antelopev2 / buffalo_l, `norm_crop`)."""
