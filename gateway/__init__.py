"""duet's DICOM gateway: receives studies over DIMSE and STOW-RS, runs them through the mammography
InferenceService over v2 and sends the resulting SR back to PACS (see docs/gateway.md)."""
