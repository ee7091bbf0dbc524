"""The bundle: the typed ``bundle.json`` schema that writes and reads it, the model card, the
export that writes a bundle, the reader that loads one, and the default model shipped in srcrn."""
