"""CoNLL-U reader (https://universaldependencies.org/format.html): word forms, UPOS and XPOS.

Each word line has ten tab-separated fields: ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC.
Multiword-token lines (ID "1-2") and empty nodes (ID "1.1") are not words of the sentence and
are skipped, as the format says; comment lines start with "#"; a blank line ends a sentence.
A UTF-8 byte order mark at the top of the file (as some editors write) is skipped.
"""
import gzip
import re
from collections import namedtuple

from tinydgm.errors import ConlluError

Sentence = namedtuple("Sentence", ["forms", "upos", "xpos"])

WORD_ID = re.compile(r"[1-9][0-9]*$")
RANGE_ID = re.compile(r"[1-9][0-9]*-[1-9][0-9]*$")
EMPTY_ID = re.compile(r"[0-9]+\.[1-9][0-9]*$")


def _open(path):
    # utf-8-sig: UTF-8 that drops a byte order mark at the very start
    return gzip.open(path, "rt", encoding="utf-8-sig") if str(path).endswith(".gz") \
        else open(path, encoding="utf-8-sig")


def conllu(path):
    """The sentences of a CoNLL-U file (plain or .gz), as Sentence(forms, upos, xpos) lists."""
    sentences, words = [], []

    def fail(lineno, why):
        raise ConlluError(f"{path}, line {lineno}: {why}")

    try:
        with _open(path) as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip():
                    if words:
                        sentences.append(Sentence(*map(list, zip(*words))))
                    words = []
                elif line.startswith("#"):
                    continue
                else:
                    fields = line.split("\t")
                    if len(fields) != 10:
                        fail(lineno, f"expected 10 tab-separated fields, got {len(fields)}")
                    tid = fields[0]
                    if RANGE_ID.match(tid) or EMPTY_ID.match(tid):
                        continue                      # multiword token or empty node: not a word
                    if not WORD_ID.match(tid):
                        fail(lineno, f"expected a word ID (1, 2, ...), a range (1-2) or an "
                                     f"empty node (1.1), got {tid!r}")
                    if int(tid) != len(words) + 1:
                        fail(lineno, f"expected word ID {len(words) + 1}, got {tid}")
                    words.append((fields[1], fields[3], fields[4]))
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ConlluError(f"{path}: cannot read as CoNLL-U ({e})") from None
    if words:
        sentences.append(Sentence(*map(list, zip(*words))))
    return sentences
