# Default size of the mini recipe (./run.sh). Budget: 60 min on an idle 2-core CPU (see README.md for
# what was and was not measured).
corpus_config=conf/corpus.yaml
llm_opts=""             # conf/pretrain_llm.yaml: 2800 steps of 1536 tokens (980 copy-only on the source languages)
encoder_opts=""         # conf/pretrain_encoder.yaml: d=192, 2300 steps of 8000 mel frames (~6 epochs)
warm_opts=""           # conf defaults of zipasr.mini.warm_projector: 300 steps of 16000 mel frames
stage1_steps=900        # 4 packed rows of 512 tokens (~16 utterances at character level) per step: ~0.85 epoch
                        # (the frozen encoder halves the step time: 900 steps cost what 480 did)
stage2_steps=480        # per method; stages 7-8 run two jobs at a time (run.sh --jobs, 1 thread each). dev_target
                        # Zipper-Soft high / low CER: 240 steps 13.9 / 71.4, 360 10.0 / 67.5, 480 8.6 / 64.3,
                        # 600 7.7 / 62.8 % (NOTES.md, "Stage 2 length"); 480 for the budget
methods="vanilla independent zipper_soft zipper_soft_initb"
regimes="full"
decode_opts=""
# Sibling methods (docs/sibling_methods.md): run by --full true (each costs a Stage-2 build and a decode,
# ~1.5-2 min here); the default spends those minutes on the encoder and Stage 1 instead.
sibling_methods=""
sibling_steps=60        # optimizer steps of experts fuse / distill (batches of 8 utterances)
lid_opts="--max_per_language 200"   # LID classifier (zipasr.bin.train_lid) on the Stage-1 encoder, for agnostic_methods
# The extra decodes of stage 8 are left to --full (and --quick, --micro): a third round of two decodes
# (~4.5 min of the 60 on an AVX-512 CPU; NOTES.md, "Budgets"). The default's stage 8 decodes the four
# methods only.
agnostic_methods=""     # methods decoded once more with the predicted language (language-agnostic)
stage1_target_decode=false   # the Stage-1 model on test_all (the tables' Stage-1 row)
