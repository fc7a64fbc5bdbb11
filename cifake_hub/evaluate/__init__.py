"""Evaluating a detector past its accuracy: image-handling conditions (:mod:`.conditions`),
calibration and uncertainty (:mod:`.calibration`), the `cifake evaluate` job (:mod:`.run`) and
its pictures (:mod:`.render`)."""
