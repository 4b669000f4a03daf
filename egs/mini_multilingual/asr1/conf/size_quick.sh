# --quick true: the same stages on half the corpus with fewer steps. Budget: 15 min on an idle 2-core CPU.
corpus_config=conf/corpus_quick.yaml
llm_opts="--set steps=150"
encoder_opts="--set steps=250"
stage1_steps=120
stage2_steps=40
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
decode_opts=""
