"""Corpus preparers, one module per corpus, each with

    prepare(root, split, lang=None, skip_bad=False, report=None) -> DataDir

that reads the corpus in its released layout (see each module's docstring) and keeps text as the corpus gives
it. Bad entries raise CorpusError naming utterance and file; with skip_bad they are skipped and `report`
(a dict) receives {utterance: reason}.
"""
from zipasr.data.corpora import commonvoice, librispeech, mls, msr86k, wenetspeech
from zipasr.data.corpora.base import CorpusBuilder, CorpusError

CORPORA = {
    "librispeech": librispeech.prepare,
    "mls": mls.prepare,
    "commonvoice": commonvoice.prepare,
    "wenetspeech": wenetspeech.prepare,
    "msr86k": msr86k.prepare,
}

__all__ = ["CORPORA", "CorpusBuilder", "CorpusError"]
