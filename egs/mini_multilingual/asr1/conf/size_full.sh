# --full true: every Stage-2 method and both encoder regimes (each regime trains its own Stage 1 and 2).
corpus_config=conf/corpus.yaml
llm_opts="--set steps=600"
encoder_opts="--set steps=1500"
stage1_steps=1200
stage2_steps=400
methods="vanilla independent flylora zipper_static zipper_hard zipper_soft zipper_soft_initb"
regimes="full chunked"
