import time
from test_train_helpers import trained_experiments
def test_smoke(tmp_path_factory, tiny_whisper_dir, tiny_llm_dir):
    t=time.time()
    runs = trained_experiments(tmp_path_factory.mktemp("runs"), tiny_whisper_dir, tiny_llm_dir)
    print("took", time.time()-t, runs)
    print((runs["stage1"]/"train.log").read_text()[-3000:])
    print((runs["stage2"]/"train.log").read_text()[-3000:])
