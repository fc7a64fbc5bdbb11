"""Explaining a trained detector: Grad-CAM maps (:mod:`.gradcam`), their pictures
(:mod:`.render`) and ``cifake explain`` on a run folder (:mod:`.run`)."""
