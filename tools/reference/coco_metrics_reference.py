#!/usr/bin/env python3
"""Golden values for VlaBias's caption metrics (BLEU-1..4, ROUGE-L, CIDEr-D) from pycocoevalcap's own scorers.

Usage:
    python3 tools/reference/coco_metrics_reference.py PYCOCOEVALCAP_DIR [OUT_JSON]

(any python3 with numpy, e.g. Debian's /usr/bin/python3 with python3-numpy)

PYCOCOEVALCAP_DIR is a checkout of salaniz/pycocoevalcap (the folder that holds bleu/bleu_scorer.py,
rouge/rouge.py and cider/cider_scorer.py; ad63453 was used). Only those three files are loaded, by path, and they
need only numpy and the standard library (no Java). pycocoevalcap is not part of this repository.

The script mirrors what bleu/bleu.py, rouge/rouge.py and cider/cider.py do with the scorers (BLEU with option
'closest'), on a fixed set of captions that are already tokenized the way CaptionTokenizer tokenizes, and writes the
inputs and the expected values to OUT_JSON (default tests/VlaBias.Tests/Fixtures/coco_metrics/expected.json).
"""
import importlib.util
import json
import os
import sys

import numpy as np


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Already tokenized: lowercase, punctuation removed, single spaces. Chosen to exercise clipping (repeated words),
# ties in the closest reference length, hypotheses shorter/longer than their references, one-word and two-word
# hypotheses (CIDEr-D's bigram-count "length"), n-grams absent from every reference, and n-grams present in every
# image's references (idf 0).
IMAGES = [
    {"id": "kitchen", "refs": ["a man cooking in a kitchen",
                               "a person is cooking food on a stove",
                               "a chef prepares a meal in the kitchen"],
     "hyp": "a man cooking food in a kitchen"},
    {"id": "garage", "refs": ["a woman holding a wrench in a garage",
                              "a mechanic with a wrench next to a car",
                              "a woman fixing a car in the garage",
                              "a person repairs a car"],
     "hyp": "a man holding a wrench in a garage"},
    {"id": "office", "refs": ["a person sitting at a desk",
                              "a man working on a laptop in an office"],
     "hyp": "a a a a person person"},
    {"id": "hospital", "refs": ["a doctor with a stethoscope in a hospital",
                                "a woman doctor standing in a hospital room",
                                "a doctor in a white coat holds a stethoscope",
                                "a physician in a hospital hallway",
                                "a doctor wearing a stethoscope"],
     "hyp": "a nurse holding a clipboard in a hospital room next to a bed with a patient"},
    {"id": "classroom", "refs": ["a teacher standing in front of a blackboard",
                                 "a woman teaching a class"],
     "hyp": "teacher"},
    {"id": "salon", "refs": ["a hairdresser cutting hair in a salon",
                             "a man cutting a customer 's hair",
                             "a barber at work"],
     "hyp": "a hairdresser cutting hair"},
    {"id": "lab", "refs": ["a scientist looking into a microscope",
                           "a woman in a lab coat uses a microscope",
                           "a scientist in a laboratory"],
     "hyp": "a scientist in a laboratory"},
    {"id": "site", "refs": ["a construction worker wearing a hard hat",
                            "a man in a hard hat on a building site",
                            "a worker at a construction site"],
     "hyp": "a person in a yellow hard hat"},
]


def main():
    root = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(__file__), "..", "..", "tests", "VlaBias.Tests", "Fixtures", "coco_metrics", "expected.json")

    bleu_scorer = load(os.path.join(root, "bleu", "bleu_scorer.py"), "bleu_scorer")
    rouge = load(os.path.join(root, "rouge", "rouge.py"), "rouge")
    cider_scorer = load(os.path.join(root, "cider", "cider_scorer.py"), "cider_scorer")

    # BLEU, as bleu/bleu.py does it.
    bleu = bleu_scorer.BleuScorer(n=4)
    for im in IMAGES:
        bleu += (im["hyp"], im["refs"])
    bleu_scores, _ = bleu.compute_score(option="closest", verbose=0)

    # ROUGE-L, as rouge/rouge.py's compute_score does it.
    gts = {im["id"]: im["refs"] for im in IMAGES}
    res = {im["id"]: [im["hyp"]] for im in IMAGES}
    rouge_score, rouge_per_image = rouge.Rouge().compute_score(gts, res)

    # CIDEr-D, as cider/cider.py does it.
    cider = cider_scorer.CiderScorer(n=4, sigma=6.0)
    for im in IMAGES:
        cider += (im["hyp"], im["refs"])
    cider_score, cider_per_image = cider.compute_score()

    expected = {
        "source": "salaniz/pycocoevalcap bleu_scorer.py (option 'closest'), rouge.py, cider_scorer.py (n=4, sigma=6); "
                  "produced by tools/reference/coco_metrics_reference.py",
        "images": IMAGES,
        "bleu": [float(x) for x in bleu_scores],
        "rouge_l": float(rouge_score),
        "rouge_l_per_image": [float(x) for x in rouge_per_image],
        "cider_d": float(cider_score),
        "cider_d_per_image": [float(x) for x in np.asarray(cider_per_image)],
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(expected, f, indent=2)
        f.write("\n")
    print(json.dumps({k: expected[k] for k in ("bleu", "rouge_l", "cider_d")}, indent=2))


if __name__ == "__main__":
    main()
