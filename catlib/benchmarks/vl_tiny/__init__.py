"""vl-tiny: the embedded stand-in of the paper's Table 4 (BLIP on six vision-language tasks): :mod:`.data` makes the
tasks, :mod:`.build` trains the zoo, :mod:`.benchmark` loads it."""
