"""The clinician's answers: one image's result, its measurements and readings, the rendered
mask and overlay, the PDF report, Grad-CAM explanations and the follow-up comparison."""
