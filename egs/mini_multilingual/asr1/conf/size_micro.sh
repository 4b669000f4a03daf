# --micro true: CI's end-to-end check of every stage (a few utterances, a few steps; budget 5 min on an
# idle 2-core CPU, most of it Python start-up). One feature-dump job per set: fewer processes to start.
corpus_config=conf/corpus_micro.yaml
llm_opts="--set steps=8 --set batch_tokens=1024 --set log_interval=4 --set eval_sentences_per_lang=1"
encoder_opts="--set steps=6 --set log_interval=3"
warm_opts="--set steps=3"
stage1_steps=4
stage2_steps=3
train_opts="train.save_every=1"   # a checkpoint per step: CI kills a run mid-training and resumes it
methods="vanilla independent zipper_soft"   # independent: the source of lors
regimes="full"
nj=1
decode_opts="--max_new_tokens 12 --beam 2"   # the untrained micro models never stop early; a beam of 2
                                           # (joint CTC decoding and the lexicon kept): each CI decode 3x faster than 8
# Sibling methods (docs/sibling_methods.md), built from stage2_independent after Stage 2 (stage 7):
# lors (LoRS-Merging), experts_fusion (LoRA experts fused per language), experts_kd (experts distilled
# into one Vanilla-LoRA). They need "independent" in ${methods}.
sibling_methods="lors"
sibling_steps=2
lid_opts="--max_per_language 10"
agnostic_methods="zipper_soft"   # one language-agnostic decode, so that CI covers it
stage1_target_decode=true   # the Stage-1 model on test_all (the tables' Stage-1 row)
