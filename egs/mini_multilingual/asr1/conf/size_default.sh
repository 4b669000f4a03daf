# Default size of the mini recipe (./run.sh). Budget: 60 min on an idle 2-core CPU (see README.md for
# what was and was not measured).
corpus_config=conf/corpus.yaml
llm_opts=""             # conf/pretrain_llm.yaml: 500 steps of 2048 tokens
encoder_opts=""         # conf/pretrain_encoder.yaml: 1000 steps of 8000 mel frames (~2.6 epochs)
stage1_steps=500        # 4 packed rows of 512 tokens (~40 utterances) per step: ~1.3 epochs
stage2_steps=120
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
decode_opts=""
