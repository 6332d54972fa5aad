"""The `mammography` transformer: DICOM study in, lesion findings, study risk and an optional DICOM SR out.

Modules, in pipeline order: `intake` (header-only validation), `decode` (pixel decoding), `window` (Modality +
VOI LUT as one table), `geometry` (orientation, crop, resize, and the box mapping back), `study` (a study's views,
decoded concurrently), `findings` (NMS, thresholds, quality gating, risk), `report` (TID 1500 SR), `model`
(the kserve.Model).
"""
