# --quick true: the same stages on half the corpus with fewer steps (~15 min).
corpus_config=conf/corpus_quick.yaml
llm_opts="--set steps=250"
encoder_opts="--set steps=500"
stage1_steps=400
stage2_steps=150
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
