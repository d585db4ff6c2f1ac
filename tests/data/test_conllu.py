"""CoNLL-U reader (multiword tokens, empty nodes, malformed lines), the shipped EWT."""
import gzip

import pytest

from tinydgm.data.conllu import ConlluError, conllu
from tinydgm.errors import DataError

DOC = """# newdoc id = d1
# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t3:conj\t_
4\tknow\tknow\tVERB\tVB\t_\t0\troot\t_\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 2
1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def write(path, text, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize("gz", [False, True])
def test_reads_words_skipping_multiword_tokens_and_empty_nodes(tmp_path, gz):
    path = write(tmp_path / ("a.conllu.gz" if gz else "a.conllu"), DOC, gz)
    s1, s2 = conllu(path)
    assert s1.forms == ["I", "do", "n't", "know", "."]
    assert s1.upos == ["PRON", "AUX", "PART", "VERB", "PUNCT"]
    assert s1.xpos == ["PRP", "VBP", "RB", "VB", "."]
    assert (s2.forms, s2.xpos) == (["Hi"], ["UH"])


@pytest.mark.parametrize("bad, line, why", [
    ("1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\n", 4, "10 tab-separated fields"),
    ("x\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n", 4, "word ID"),
    ("2\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_\n", 4, "expected word ID 1"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, line, why):
    path = write(tmp_path / "bad.conllu", "# sent_id = 1\n# text = I\n\n" + bad)
    with pytest.raises(ConlluError, match=rf"bad\.conllu, line {line}: .*{why}"):
        conllu(path)


def test_not_gzip_is_a_clear_error(tmp_path):
    path = write(tmp_path / "x.conllu.gz", DOC)
    with pytest.raises(ConlluError, match=r"x\.conllu\.gz: cannot read as CoNLL-U"):
        conllu(path)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("top", ["", "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n\n"], ids=["comment", "word"])
def test_a_byte_order_mark_at_the_top_is_accepted(tmp_path, gz, top):
    path = write(tmp_path / ("a.conllu.gz" if gz else "a.conllu"), "\ufeff" + top + DOC, gz)
    sentences = conllu(path)
    assert sentences[-2].forms == ["I", "do", "n't", "know", "."] and sentences[-1].forms == ["Hi"]
    assert all(not w.startswith("\ufeff") for s in sentences for w in s.forms)


@pytest.mark.parametrize("texts", [[""], ["# sent_id = 1\n# text = nothing\n\n"], ["", "\n\n# c\n"]],
                         ids=["empty", "comments", "two-files"])
def test_a_corpus_without_sentences_is_a_data_error(tmp_path, texts):
    from tinydgm.data.ewt import load_corpus
    for i, text in enumerate(texts):
        write(tmp_path / f"part{i}.conllu", text)
    with pytest.raises(DataError, match=r"part0\.conllu.*: no sentences; expected CoNLL-U word lines$"):
        load_corpus(tmp_path)


def test_shipped_ewt_is_read_whole():
    from tinydgm.data.ewt import corpus_paths, ewt_dir
    sentences = [s for p in corpus_paths(ewt_dir()) for s in conllu(p)]
    assert len(sentences) == 16622
    assert sum(len(s.forms) for s in sentences) == 254818
    assert all(len(s.forms) == len(s.xpos) == len(s.upos) for s in sentences)


# ---- the commands ------------------------------------------------------------------------------
