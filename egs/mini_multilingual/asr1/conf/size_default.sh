# Default size of the mini recipe (./run.sh): ~60 min on a 2-core CPU.
corpus_config=conf/corpus.yaml
llm_opts="--set steps=600"
encoder_opts="--set steps=1500"
stage1_steps=1200
stage2_steps=400
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
