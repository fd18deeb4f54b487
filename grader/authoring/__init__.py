"""Adding an exercise: `mlgrade new` scaffolds one from a template, `mlgrade calibrate` turns a
one-change copy of its reference into a calibration submission with its measured band."""
