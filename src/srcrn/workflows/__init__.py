"""What the commands do, end to end: train or evaluate, then draw; the paper's experiments
(``reproduce``) and the demo. The CLI is a thin layer over these; they call the library's
layers below (training, evaluation, inference, reporting) and print nothing themselves."""
