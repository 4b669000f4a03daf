# Where the corpora and pretrained checkpoints live on this machine (edit once; every recipe sources it).
# Each corpus recipe's run.sh header shows the layout expected under its folder.
LIBRISPEECH=${LIBRISPEECH:-/data/LibriSpeech}                 # holds train-clean-100/ ... test-other/
MLS=${MLS:-/data/mls}                                         # holds mls_german/ mls_french/ ... (flac or _opus)
COMMONVOICE=${COMMONVOICE:-/data/cv-corpus-18.0-2024-06-14}   # holds <locale>/ with *.tsv and clips/
WENETSPEECH=${WENETSPEECH:-/data/WenetSpeech}                 # holds WenetSpeech.json and audio/
MSR86K=${MSR86K:-/data/MSR-86K}                               # holds <lang>/<split>/transcripts.tsv
# Checkpoints (local directories in transformers format)
WHISPER_DIR=${WHISPER_DIR:-/models/whisper-large-v3}
LLM_DIR=${LLM_DIR:-/models/Qwen3-1.7B}
# The Zipper-LoRA authors' released utterance-id lists (their repository's data/utt-id folder)
ZIPPER_LORA_LISTS=${ZIPPER_LORA_LISTS:-/data/zipper_lora_utt_lists}
