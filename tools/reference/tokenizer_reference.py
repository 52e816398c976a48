#!/usr/bin/python3
"""Reference tokenizer files and token-id fixtures for tests/VlaBias.Tests/Text/TokenizerFixtureTests.cs.

Builds two small tokenizers from our own corpus (below) and records the ids an independent
implementation gives for a set of test strings:

  llama-spm/   tokenizer.model trained by Google's SentencePiece (Debian python3-sentencepiece 0.1.97)
               with Llama's trainer settings (BPE, byte fallback, split digits, dummy prefix, identity
               normalisation, <unk>=0 <s>=1 </s>=2). Reference ids: sentencepiece's own C++ encoder.
  qwen2-bpe/   vocab.json + merges.txt of a byte-level BPE (GPT-2 byte↔unicode table, Qwen2's
               pre-tokenisation regex, NFC), trained and applied by the small BPE below, written from
               the published algorithm (Sennrich et al. 2016; GPT-2's encoder.py), not from any library.
               Special tokens <|endoftext|>, <|im_start|>, <|im_end|>, <image> follow the vocabulary,
               as in Qwen2 / llava-interleave-qwen.

usage: /usr/bin/python3 tools/reference/tokenizer_reference.py --out tests/VlaBias.Tests/Fixtures/tokenizers
Needs python3-sentencepiece and python3-regex (apt-get install -y python3-sentencepiece python3-regex).
"""
import argparse
import io
import json
import os
import unicodedata
from collections import Counter

import regex
import sentencepiece as spm

CORPUS = """\
A photo of a woman cooking in a kitchen next to a stove and a pan.
A man is repairing a car in the garage with a wrench.
The doctor holds a stethoscope in the hospital corridor; the nurse carries a clipboard.
Is the person in the image friendly? Answer yes, no, or unknown.
Is this person likely to be a good leader? Please answer with one word.
Describe the image in one sentence.
What is the occupation of the person shown in the picture?
A teacher stands in front of a classroom with 24 students in 2024.
The scientist in the laboratory looks at a microscope, she is careful and patient.
He's a builder at the construction site; they're wearing helmets and we'll see them tomorrow.
Numbers like 12345 and 3.14159 are split into digits.
Café owners in Zürich serve crème brûlée — naïve façade, résumé.
日本語のテキストも少し含めます。 Emoji: 🙂👍 and symbols: #, $, %, &, @.
Tabs\tand  double  spaces,   three spaces, and new
lines
are whitespace too.
The hairdresser in the salon trims hair with scissors; the receptionist answers the phone.
An engineer in an office reviews a plan on a laptop while a manager leads a meeting.
""" * 3

TEST_STRINGS = [
    "a photo of a woman cooking in a kitchen",
    "Is the person friendly? Answer yes, no, or unknown.",
    "He's a builder; they're careful, we'll see.",
    "USER: \nDescribe the image. ASSISTANT:",
    "Numbers 12345 and 3.14!",
    "  leading spaces and trailing  ",
    "line one\nline two\n\nline four",
    "Tabs\there",
    "Café crème brûlée naïve",
    "日本語 🙂",
    "unseen words: quixotic zephyr",
    "",
]

# ---------------------------------------------------------------------------------------------
# SentencePiece (Llama)
# ---------------------------------------------------------------------------------------------

def build_spm(out):
    os.makedirs(out, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()), model_writer=model, vocab_size=400,
        model_type="bpe", byte_fallback=True, split_digits=True, add_dummy_prefix=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, character_coverage=1.0,
        allow_whitespace_only_pieces=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        max_sentencepiece_length=16, num_threads=1, minloglevel=2)
    data = model.getvalue()
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    n = sp.get_piece_size()
    cfg = {
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "image_token": "<image>",
        "added_tokens_decoder": {str(n): {"content": "<image>", "special": True},
                                 str(n + 1): {"content": "<pad>", "special": True}},
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
    # Text after a special token gets no dummy prefix (Hugging Face LlamaTokenizer, legacy=false): the same model
    # with normalizer_spec.add_dummy_prefix = false encodes it.
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    proto.ParseFromString(data)
    proto.normalizer_spec.add_dummy_prefix = False
    bare = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    q = "Is the person friendly?"
    prompt_ids = [1] + sp.encode("USER: ") + [n, n] + bare.encode("\n" + q + " ASSISTANT:")
    return {"vocab_size": n + 2, "cases": [{"text": t, "ids": sp.encode(t)} for t in TEST_STRINGS],
            "prompt": {"question": q, "image_tokens": 2, "ids": prompt_ids}}

# ---------------------------------------------------------------------------------------------
# byte-level BPE (Qwen2)
# ---------------------------------------------------------------------------------------------

QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                 r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]


def bytes_to_unicode():
    """GPT-2's reversible byte → printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_ENC = bytes_to_unicode()


def words(text):
    text = unicodedata.normalize("NFC", text)
    return ["".join(BYTE_ENC[b] for b in w.encode("utf-8")) for w in regex.findall(QWEN2_PATTERN, text)]


def train_bpe(n_merges):
    counts = Counter(words(CORPUS))
    seqs = {w: list(w) for w in counts}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in counts.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], [-ord(ch) for ch in kv[0][0] + " " + kv[0][1]]))[0]
        merges.append(best)
        for w in seqs:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def bpe_word(word, ranks):
    """GPT-2's bpe(): repeatedly merge the adjacent pair of lowest merge rank."""
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        a, b = parts[i], parts[i + 1]
        merged, j = [], 0
        while j < len(parts):
            if j + 1 < len(parts) and parts[j] == a and parts[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def bpe_encode(text, vocab, ranks, specials):
    ids = []
    pattern = "(" + "|".join(regex.escape(s) for s in specials) + ")"
    for chunk in regex.split(pattern, text):
        if chunk in specials:
            ids.append(specials[chunk])
        elif chunk:
            for w in words(chunk):
                ids.extend(vocab[p] for p in bpe_word(w, ranks))
    return ids


def build_bpe(out):
    os.makedirs(out, exist_ok=True)
    merges = train_bpe(300)
    vocab = {}
    for ch in BYTE_ENC.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    ranks = {m: i for i, m in enumerate(merges)}
    specials = {s: len(vocab) + i for i, s in enumerate(SPECIALS)}
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    cfg = {
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "image_token": "<image>",
        "added_tokens_decoder": {str(i): {"content": s, "special": True} for s, i in specials.items()},
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
    cases = [{"text": t, "ids": bpe_encode(t, vocab, ranks, specials)} for t in TEST_STRINGS]
    chat = "<|im_start|>user\n<image>\nIs the person friendly?<|im_end|>\n<|im_start|>assistant\n"
    cases.append({"text": chat, "ids": bpe_encode(chat, vocab, ranks, specials)})
    q, img = "Is the person friendly?", specials["<image>"]
    prompt_ids = (bpe_encode("<|im_start|>user\n", vocab, ranks, specials) + [img, img]
                  + bpe_encode("\n" + q + "<|im_end|>\n<|im_start|>assistant\n", vocab, ranks, specials))
    return {"vocab_size": len(vocab) + len(specials), "cases": cases,
            "prompt": {"question": q, "image_tokens": 2, "ids": prompt_ids}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for name, build in (("llama-spm", build_spm), ("qwen2-bpe", build_bpe)):
        d = os.path.join(a.out, name)
        expected = build(d)
        with open(os.path.join(d, "expected_ids.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(expected, ensure_ascii=False).replace('{"text"', '\n  {"text"') + "\n")
        print(name, expected["vocab_size"], "tokens,", len(expected["cases"]), "cases")


if __name__ == "__main__":
    main()
