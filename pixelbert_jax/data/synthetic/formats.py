"""Writers of the synthetic world's files, in the official formats.

The same readers thus serve the synthetic world and the real data sets:

  coco/annotations/captions_{train,val}2014.json   COCO captions 2014
  coco/{train2014,val2014,test2015}/COCO_*.jpg     the COCO-style images
  coco/dataset_coco.json                           Karpathy split
  vqa/v2_OpenEnded_mscoco_*_questions.json         VQA v2 questions
  vqa/v2_mscoco_{train,val}2014_annotations.json   VQA v2 annotations
  nlvr2/{train,dev,test1}.json, nlvr2/images/      NLVR2 JSONL + image pairs
  flickr30k/dataset_flickr30k.json, flickr30k-images/   retrieval split
  snli_ve/snli_ve_{train,dev,test}.jsonl           SNLI-VE on the Flickr30K images
  vg/region_descriptions.json, vg/image_data.json, vg/VG_100K/
  web/{cc3m,cc12m,sbu,img2dataset*}/               web corpora (`web_formats`)
  vocab.txt                                        the world's WordPiece vocab
"""

from __future__ import annotations

import collections
import json
import os

import numpy as np
from PIL import Image

from pixelbert_jax.data.synthetic.language import (
    annotator_answers, make_captions, make_hypotheses, make_questions, make_statement,
    vocabulary)
from pixelbert_jax.data.synthetic.scenes import Scene, render_scene, sample_scene
from pixelbert_jax.data.synthetic.web_formats import write_web


def _rng(seed: int, *keys: int) -> np.random.Generator:
  """An independent stream per (seed, data set, index): order-free, repeatable."""
  return np.random.default_rng([seed, *keys])


def _save(image: Image.Image, path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if path.endswith(".png"):
    image.save(path, format="PNG")
  else:
    image.save(path, format="JPEG", quality=90)


def _write_json(path: str, data) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, separators=(",", ":"))
  return path


def _info(description: str) -> dict:
  return {"description": f"pixelbert_jax synthetic world: {description}",
          "version": "1.0", "year": 2026, "contributor": "pixelbert_jax",
          "date_created": "2026-11-27"}


# Per-data-set stream keys, so adding one data set never changes another (the web
# corpora's is 6, in `web_formats`).
_COCO, _FLICKR, _NLVR2, _VG, _SNLI_VE = 1, 2, 3, 4, 5
# Names the cached worlds (`cache.world_root`): bump it whenever a writer changes what it
# writes, so that a run never reads a world written by older writers.
WORLD_VERSION = 3
_COCO_SUBSETS = {"train2014": 0, "val2014": 1, "test2015": 2}


def _draw_coco_subset(root: str, subset: str, count: int, seed: int) -> list[dict]:
  """Draws one COCO image folder; returns per image its id, file and scene."""
  entries = []
  offset = (_COCO_SUBSETS[subset] + 1) * 100_000
  for index in range(count):
    rng = _rng(seed, _COCO, _COCO_SUBSETS[subset], index)
    scene = sample_scene(rng)
    image_id = offset + 7 * index + 1
    file_name = f"COCO_{subset}_{image_id:012d}.jpg"
    _save(render_scene(scene, rng), os.path.join(root, subset, file_name))
    entries.append({"id": image_id, "file_name": file_name, "scene": scene,
                    "captions": make_captions(scene, rng),
                    "questions": make_questions(scene, rng), "rng": rng})
  return entries


def _coco_captions_json(subset: str, entries: list[dict], first_id: int) -> dict:
  images, annotations = [], []
  for entry in entries:
    scene = entry["scene"]
    images.append({"license": 1, "file_name": entry["file_name"],
                   "coco_url": "", "height": scene.height, "width": scene.width,
                   "date_captured": "2026-11-27 00:00:00", "flickr_url": "",
                   "id": entry["id"]})
    for caption in entry["captions"]:
      annotations.append({"image_id": entry["id"], "id": first_id + len(annotations),
                          "caption": caption})
  return {"info": _info(f"COCO captions {subset}"), "images": images,
          "licenses": [{"url": "", "id": 1, "name": "synthetic"}],
          "annotations": annotations}


def _karpathy_tokens(text: str) -> list[str]:
  return "".join(c if c.isalnum() else " " for c in text.lower()).split()


def _karpathy_json(dataset: str, items: list[tuple[str, str, str, list[str], dict]]) -> dict:
  """Karpathy-split JSON from (filepath, filename, split, captions, extra) items."""
  images, sentid = [], 0
  for imgid, (filepath, filename, split, captions, extra) in enumerate(items):
    sentences = []
    for caption in captions:
      sentences.append({"tokens": _karpathy_tokens(caption), "raw": caption,
                        "imgid": imgid, "sentid": sentid + len(sentences)})
    image = {"filepath": filepath, "sentids": [s["sentid"] for s in sentences],
             "filename": filename, "imgid": imgid, "split": split,
             "sentences": sentences, **extra}
    if not filepath:
      del image["filepath"]  # Flickr30K's Karpathy file has no such field.
    images.append(image)
    sentid += len(sentences)
  return {"images": images, "dataset": dataset}


def _karpathy_split(subset: str, index: int, count: int) -> str:
  """train2014 -> train; val2014 -> a quarter val, a quarter test, half restval."""
  if subset == "train2014":
    return "train"
  quarter = max(1, count // 4)
  return "val" if index < quarter else "test" if index < 2 * quarter else "restval"


def _write_coco(out: str, coco: dict[str, list[dict]]) -> dict[str, str]:
  root = os.path.join(out, "coco")
  paths, items, first_id = {"coco_root": root}, [], 1
  for subset in ("train2014", "val2014"):
    data = _coco_captions_json(subset, coco[subset], first_id)
    first_id += len(data["annotations"])
    paths[f"coco_captions_{subset[:-4]}"] = _write_json(
        os.path.join(root, "annotations", f"captions_{subset}.json"), data)
    for index, entry in enumerate(coco[subset]):
      split = _karpathy_split(subset, index, len(coco[subset]))
      items.append((subset, entry["file_name"], split, entry["captions"],
                    {"cocoid": entry["id"]}))
  paths["karpathy_coco"] = _write_json(os.path.join(root, "dataset_coco.json"),
                                       _karpathy_json("coco", items))
  return paths


def _vqa_records(entries: list[dict]) -> tuple[list[dict], list[dict]]:
  questions, annotations = [], []
  for entry in entries:
    for k, question in enumerate(entry["questions"]):
      qid = entry["id"] * 1000 + k
      questions.append({"image_id": entry["id"], "question": question.text,
                        "question_id": qid})
      answers = annotator_answers(question, entry["rng"])
      annotations.append({
          "question_type": question.question_type,
          "multiple_choice_answer": collections.Counter(answers).most_common(1)[0][0],
          "answers": [{"answer": a, "answer_confidence": "yes" if a == question.answer
                       else "maybe", "answer_id": i + 1} for i, a in enumerate(answers)],
          "image_id": entry["id"], "answer_type": question.answer_type,
          "question_id": qid})
  return questions, annotations


def _vqa_files(subset: str, entries: list[dict]) -> dict[str, list[dict]]:
  """{data_subtype: its images' entries}: test2015 is written twice, as in the
  official release, as test-std (every image) and test-dev (a subset, here every
  other image)."""
  if subset == "test2015":
    return {"test2015": entries, "test-dev2015": entries[::2]}
  return {subset: entries}


def _write_vqa(out: str, coco: dict[str, list[dict]]) -> dict[str, str]:
  root, paths = os.path.join(out, "vqa"), {}
  files = {t: e for subset, entries in coco.items()
           for t, e in _vqa_files(subset, entries).items()}
  for data_subtype, entries in files.items():
    questions, annotations = _vqa_records(entries)
    header = {"info": _info(f"VQA v2 {data_subtype}"), "data_type": "mscoco",
              "data_subtype": data_subtype,
              "license": {"url": "", "name": "synthetic"}}
    paths[f"vqa_{data_subtype}_questions"] = _write_json(
        os.path.join(root, f"v2_OpenEnded_mscoco_{data_subtype}_questions.json"),
        {**header, "task_type": "Open-Ended", "questions": questions})
    if not data_subtype.startswith("test"):  # Test splits ship without annotations.
      paths[f"vqa_{data_subtype}_annotations"] = _write_json(
          os.path.join(root, f"v2_mscoco_{data_subtype}_annotations.json"),
          {**header, "annotations": annotations})
  return paths


def _nlvr2_example(split: str, set_id: int, seed: int, images: str) -> dict:
  """One pair of PNG images and one balanced true/false statement about them."""
  rng = _rng(seed, _NLVR2, ("train", "dev", "test1").index(split), set_id)
  label = bool(rng.random() < 0.5)
  while True:
    scenes = (sample_scene(rng), sample_scene(rng))
    sentence = make_statement(scenes, label, rng)
    if sentence is not None:
      break
  # Real NLVR2 spreads train images over numbered sub-folders.
  directory = str(set_id % 10) if split == "train" else ""
  for side, scene in enumerate(scenes):
    name = f"{split}-{set_id}-0-img{side}.png"
    _save(render_scene(scene, rng), os.path.join(images, split, directory, name))
  example = {"identifier": f"{split}-{set_id}-0-0", "sentence": sentence,
             "label": str(label), "synset": "synthetic", "query": "synthetic"}
  if directory:
    example["directory"] = directory
  return example


def _write_nlvr2(out: str, seed: int, num_pairs: int) -> dict[str, str]:
  root = os.path.join(out, "nlvr2")
  images = os.path.join(root, "images")
  paths = {"nlvr2_root": root, "nlvr2_images": images}
  counts = {"dev": max(2, num_pairs * 15 // 100), "test1": max(2, num_pairs * 15 // 100)}
  counts["train"] = max(2, num_pairs - counts["dev"] - counts["test1"])
  for split, count in counts.items():
    lines = [json.dumps(_nlvr2_example(split, i, seed, images)) for i in range(count)]
    os.makedirs(root, exist_ok=True)
    paths[f"nlvr2_{split}"] = os.path.join(root, f"{split}.json")
    with open(paths[f"nlvr2_{split}"], "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
  return paths


def _flickr30k_file(index: int) -> str:
  return f"{1_000_000_000 + 9973 * index}.jpg"


def _flickr30k_split(index: int) -> str:
  return "val" if index % 7 == 5 else "test" if index % 7 == 6 else "train"


def _write_flickr30k(out: str, seed: int, count: int) -> dict[str, str]:
  root = os.path.join(out, "flickr30k")
  images = os.path.join(root, "flickr30k-images")
  items = []
  for index in range(count):
    rng = _rng(seed, _FLICKR, index)
    scene = sample_scene(rng)
    filename = _flickr30k_file(index)
    _save(render_scene(scene, rng), os.path.join(images, filename))
    items.append(("", filename, _flickr30k_split(index), make_captions(scene, rng), {}))
  return {"flickr30k_root": root, "flickr30k_images": images,
          "karpathy_flickr30k": _write_json(os.path.join(root, "dataset_flickr30k.json"),
                                            _karpathy_json("flickr30k", items))}


def _snli_ve_entry(filename: str, k: int, hypothesis: str, label: str,
                   premise: str) -> dict:
  """One line as the SNLI-VE generator writes it: SNLI's fields and `Flickr30K_ID`."""
  return {"annotator_labels": [label], "captionID": f"{filename}#0",
          "gold_label": label, "pairID": f"{filename}#0r{k}{label[0]}",
          "sentence1": premise, "sentence2": hypothesis,
          "Flickr30K_ID": filename.removesuffix(".jpg")}


def _write_snli_ve(out: str, seed: int, count: int) -> dict[str, str]:
  """SNLI-VE on the Flickr30K images (train / dev / test as Karpathy's train / val /
  test), with hypotheses about each image's scene (`language.make_hypotheses`)."""
  root, lines = os.path.join(out, "snli_ve"), {"train": [], "dev": [], "test": []}
  for index in range(count):
    scene = sample_scene(_rng(seed, _FLICKR, index))  # the image's own scene
    rng = _rng(seed, _SNLI_VE, index)
    filename = _flickr30k_file(index)
    split = {"val": "dev", "test": "test"}.get(_flickr30k_split(index), "train")
    premise = make_captions(scene, rng)[0]
    for k, (hypothesis, label) in enumerate(make_hypotheses(scene, rng)):
      lines[split].append(json.dumps(_snli_ve_entry(filename, k, hypothesis, label,
                                                    premise)))
  os.makedirs(root, exist_ok=True)
  paths = {}
  for split, split_lines in lines.items():
    paths[f"snli_ve_{split}"] = os.path.join(root, f"snli_ve_{split}.jsonl")
    with open(paths[f"snli_ve_{split}"], "w", encoding="utf-8") as f:
      f.write("\n".join(split_lines) + "\n")
  return paths


def _vg_regions(image_id: int, scene: Scene, first_id: int) -> list[dict]:
  regions = []
  for obj in scene.objects:
    left, top = max(0, int(obj.x - obj.r)), max(0, int(obj.y - obj.r))
    regions.append({"region_id": first_id + len(regions), "image_id": image_id,
                    "x": left, "y": top, "width": int(2 * obj.r),
                    "height": int(2 * obj.r), "phrase": f"{obj.size} {obj.name}"})
  return regions


def _write_visual_genome(out: str, seed: int, count: int) -> dict[str, str]:
  root = os.path.join(out, "vg")
  image_data, descriptions, first_region = [], [], 1
  for index in range(count):
    rng = _rng(seed, _VG, index)
    scene = sample_scene(rng)
    image_id = index + 1
    _save(render_scene(scene, rng), os.path.join(root, "VG_100K", f"{image_id}.jpg"))
    image_data.append({"image_id": image_id, "width": scene.width,
                       "height": scene.height, "coco_id": None, "flickr_id": None,
                       "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{image_id}.jpg"})
    regions = _vg_regions(image_id, scene, first_region)
    first_region += len(regions)
    descriptions.append({"regions": regions, "id": image_id})
  return {"vg_root": root,
          "vg_image_data": _write_json(os.path.join(root, "image_data.json"), image_data),
          "vg_region_descriptions": _write_json(
              os.path.join(root, "region_descriptions.json"), descriptions)}


def write_vocab(path: str) -> str:
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(vocabulary()) + "\n")
  return path


def generate(out_dir: str, seed: int = 0, num_images: int = 1000) -> dict[str, str]:
  """Writes the whole synthetic world under `out_dir`.

  Args:
    out_dir: the folder to write into (created if needed).
    seed: the same seed always writes byte-identical files.
    num_images: COCO-style images (train2014 60 %, val2014 40 %); the other data
      sets are sized from it: test2015 1/8, Flickr30K 1/4, NLVR2 pairs 1/4 (two
      images each), Visual Genome 1/8, the web corpora's pool 1/8 (at least 24).

  Returns:
    A dict from names (e.g. "coco_captions_train", "karpathy_coco",
    "vqa_train2014_questions", "nlvr2_dev", "vocab") to the written paths.
  """
  os.makedirs(out_dir, exist_ok=True)
  num_train = max(2, num_images * 6 // 10)
  sizes = {"train2014": num_train, "val2014": max(4, num_images - num_train),
           "test2015": max(2, num_images // 8)}
  root = os.path.join(out_dir, "coco")
  coco = {s: _draw_coco_subset(root, s, n, seed) for s, n in sizes.items()}
  paths = {"root": out_dir, **_write_coco(out_dir, coco), **_write_vqa(out_dir, coco)}
  paths.update(_write_nlvr2(out_dir, seed, max(8, num_images // 4)))
  paths.update(_write_flickr30k(out_dir, seed, max(7, num_images // 4)))
  paths.update(_write_snli_ve(out_dir, seed, max(7, num_images // 4)))
  paths.update(_write_visual_genome(out_dir, seed, max(4, num_images // 8)))
  paths.update(write_web(out_dir, seed, max(24, num_images // 8)))
  paths["vocab"] = write_vocab(os.path.join(out_dir, "vocab.txt"))
  return paths
