"""DICOM out (issue 34): the SEG and SR of an answer (``objects``) and a DICOM node (``node``).
DICOM in is the data layer's (``data.dicom``): an image source like any other."""
