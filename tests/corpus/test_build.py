"""End to end on the shared local Ray: the sample corpus plus a crafted source, through the CLI."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from medgo.assets import ASSETS
from medgo.cli import main
from medgo.config import load_config
from medgo.corpus.build import run
from medgo.corpus.config import CONFIG_DIR, CorpusConfig
from medgo.corpus.dataset import ShardMismatchError, open_shards, read_manifest
from medgo.corpus.phi_testset import generate
from medgo.model.tokenizer import tokenizer_fingerprint

BASE = (
    "社区获得性肺炎是指在医院外罹患的感染性肺实质炎症，常见病原体为肺炎链球菌、流感嗜血杆菌、肺炎支原体和呼吸道病毒。"
    "临床表现为发热、咳嗽、咳痰，可伴胸痛和呼吸困难，胸部影像学检查可见新出现的斑片状浸润影。门诊轻症患者可选用阿莫西林或多西环素，"
    "住院患者可选用β内酰胺类联合大环内酯类，疗程一般为5至7天，治疗后48至72小时应评估疗效。"
)
NEAR = BASE.replace("5至7天", "7至10天")


def eval_item() -> str:
    items = json.loads((ASSETS / "cblue" / "CMeEE-V2" / "CMeEE-V2_test.json").read_text(encoding="utf-8"))
    return next(i["text"] for i in items if len(i["text"]) >= 15)


def crafted_lines(phi_text: str) -> list[bytes]:
    def rec(text):
        return json.dumps({"text": text}, ensure_ascii=False).encode()

    return [
        rec(BASE),  # 1 kept
        rec(NEAR),  # 2 near duplicate of line 1
        b'{"text": "broken json',  # 3 malformed
        rec(BASE),  # 4 exact duplicate of line 1
        b'{"title": "no text"}',  # 5 malformed
        rec("太短"),  # 6 too short
        b'{"text": ["not", "a", "string"]}',  # 7 malformed
        rec("==== ---- **** #### !!!! ???? .... ;;;; ,,,, ~~~~ ==== ---- **** ####"),  # 8 low content
        "\xff\xfe".encode("latin-1") + rec("bad bytes"),  # 9 malformed
        rec("高血压合并糖尿病" * 30),  # 10 repetitive
        rec(f"在一次病例讨论中，带教老师指出：{eval_item()}这一点需要特别注意，并结合患者病史综合判断。"),  # 11 contaminated
        rec(phi_text),  # 12 kept, de-identified
    ]


MALFORMED = {3: "invalid JSON", 5: "missing text field 'text'", 7: "text field 'text' is list, not a string", 9: "invalid UTF-8 at byte 0"}


@pytest.fixture(scope="module")
def phi():
    samples = generate(n_records=6, seed=11)
    return "".join(s.text for s in samples), [v for s in samples for _, v in s.planted]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, phi):
    root = tmp_path_factory.mktemp("corpus")
    (root / "crafted.jsonl").write_bytes(b"\n".join(crafted_lines(phi[0])) + b"\n")
    data = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text(encoding="utf-8"))
    data["sources"].append({"name": "crafted", "path": str(root / "crafted.jsonl"), "format": "jsonl", "category": "crafted"})
    data["read"]["chunk_mb"] = 0.02  # the 60 KB sample files are read as several byte ranges
    data["read"]["group_mb"] = 0.25  # in a few read groups (packed back in corpus order)
    path = root / "corpus.yaml"
    path.write_text("# medgo corpus build --config corpus.yaml\n" + yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def built(ray_session, config_file):
    out = config_file.parent / "a"
    assert main(["corpus", "build", "--config", str(config_file), "--output", str(out)]) == 0
    return out / "corpus" / "tiny"


def blocks(out, split) -> list[list[int]]:
    manifest = read_manifest(out)
    return [row for p in manifest["splits"][split]["shards"] for row in pq.read_table(out / p).column("input_ids").to_pylist()]


def test_artefacts_written(built):
    for name in ("manifest.json", "report.md", "tokens_per_category.png", "quarantine.jsonl", "decontaminated.jsonl", "duplicates.jsonl", "config.yaml", "metrics.json"):
        assert (built / name).is_file(), name
    assert (built / "tokens_per_category.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (built / "_work").exists() and not (built.parent / ".tiny.building").exists()
    report = (built / "report.md").read_text(encoding="utf-8")
    assert "![tokens per category](tokens_per_category.png)" in report and "| crafted |" in report


def test_every_record_is_accounted_for(built):
    m = read_manifest(built)
    crafted = m["categories"]["crafted"]
    assert crafted["documents_in"] == 12
    assert crafted["documents_out"] == 2
    assert crafted["dropped"] == {"contaminated": 1, "exact_duplicate": 1, "low_content": 1, "malformed": 4, "near_duplicate": 1, "repetitive": 1, "too_short": 1}
    assert m["documents"]["in"] == m["documents"]["out"] + sum(m["drops"].values())
    assert m["documents"]["quarantined"] == m["drops"]["malformed"] == 4
    assert m["splits"]["train"]["documents"] + m["splits"]["validation"]["documents"] == m["documents"]["out"]
    assert m["categories"]["guideline"]["dropped"].get("exact_duplicate", 0) >= 1  # the sample's planted duplicates
    assert m["categories"]["guideline"]["dropped"].get("near_duplicate", 0) >= 1
    assert m["read_groups"] >= 3  # packed back across groups in corpus order (see the byte-range test below)
    assert m["boilerplate"]["lines"] >= 1 and m["boilerplate"]["lines_removed"] >= 3  # the encyclopedia footer


def test_quarantine_names_file_line_and_reason_only(built):
    rows = [json.loads(line) for line in (built / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == sorted(MALFORMED)
    for r in rows:
        assert r["file"].endswith("crafted.jsonl") and r["reason"].startswith(MALFORMED[r["line"]])
        assert set(r) == {"file", "line", "source", "reason"}


def test_duplicates_and_contamination_are_listed(built):
    clusters = [json.loads(line) for line in (built / "duplicates.jsonl").read_text(encoding="utf-8").splitlines()]
    crafted = [c for c in clusters if c["kept"]["file"].endswith("crafted.jsonl")]
    assert crafted == [{"kept": {"file": crafted[0]["kept"]["file"], "line": 1}, "dropped": [{"file": crafted[0]["kept"]["file"], "line": 2}, {"file": crafted[0]["kept"]["file"], "line": 4}]}]
    hits = [json.loads(line) for line in (built / "decontaminated.jsonl").read_text(encoding="utf-8").splitlines()]
    mine = [h for h in hits if h["file"].endswith("crafted.jsonl")]
    assert len(mine) == 1 and mine[0]["line"] == 11
    assert mine[0]["eval_file"].endswith("CMeEE-V2_test.json") and mine[0]["ngram"] in eval_item()


def test_blocks_are_packed_without_padding(built, tokenizer):
    m = read_manifest(built)
    assert m["tokenizer_fingerprint"] == tokenizer_fingerprint(tokenizer)
    eos = m["eos_token_id"]
    for split in ("train", "validation"):
        rows = blocks(built, split)
        assert rows, f"{split} has no block"
        for shard in m["splits"][split]["shards"]:  # a shard holds one packing group: only its last block may be short
            sizes = [len(b) for b in pq.read_table(built / shard).column("input_ids").to_pylist()]
            assert all(n == m["block_size"] for n in sizes[:-1]) and 0 < sizes[-1] <= m["block_size"]
        assert len(m["splits"][split]["shards"]) <= m["read_groups"]
        stream = [t for b in rows for t in b]
        assert len(rows) == m["splits"][split]["blocks"] and len(stream) == m["splits"][split]["tokens"]
        assert stream[-1] == eos and stream.count(eos) == m["splits"][split]["documents"]
    schema = pq.read_schema(built / m["splits"]["train"]["shards"][0])
    assert schema.field("input_ids").type == pa.list_(pa.int32())
    assert sum(c["tokens"] for c in m["categories"].values()) == m["splits"]["train"]["tokens"] + m["splits"]["validation"]["tokens"]


def test_no_identifier_survives_or_is_reported(built, tokenizer, phi):
    _, planted = phi
    text = "".join(tokenizer.decode(b) for s in ("train", "validation") for b in blocks(built, s))
    assert "[身份证号]" in text and "[姓名]" in text and "[电话]" in text
    case_reports = (ASSETS / "corpus" / "case_report.jsonl").read_text(encoding="utf-8")
    ids = set(re.findall(r"(?<!\d)\d{17}[\dX](?!\d)", case_reports)) | set(re.findall(r"(?<!\d)1[3-9]\d{9}(?!\d)", case_reports))
    long_values = [v for v in planted if len(v) >= 6] + sorted(ids)
    assert long_values
    written = "".join(p.read_text(encoding="utf-8") for p in built.iterdir() if p.suffix in {".json", ".jsonl", ".md"})
    for value in long_values:
        assert value not in text and value not in written
    m = read_manifest(built)
    assert m["phi"]["id_card"] >= len(re.findall(r"(?<!\d)\d{17}[\dX](?!\d)", case_reports))
    assert all(m["phi"][k] > 0 for k in ("name", "phone", "record_number", "address", "birth_date", "bed_number", "email"))


def test_same_inputs_give_byte_identical_shards(built, config_file):
    cfg = load_config(CorpusConfig, config_file, [f"output_dir={config_file.parent / 'b'}"])
    again = run(cfg)
    first = read_manifest(built)
    assert again["content_hash"] == first["content_hash"]
    assert {k: v for k, v in again.items() if k != "files"} == {k: v for k, v in first.items() if k != "files"}
    for split in ("train", "validation"):
        for p in first["splits"][split]["shards"]:
            assert (built / p).read_bytes() == (config_file.parent / "b" / "corpus" / "tiny" / p).read_bytes()


def test_open_shards_for_training(built, tokenizer):
    m = read_manifest(built)
    ds = open_shards(built, "train", expected_fingerprint=tokenizer_fingerprint(tokenizer))
    rows = [row for b in ds.iter_batches(batch_format="pyarrow", batch_size=None) for row in b.column("input_ids").to_pylist()]
    assert rows == blocks(built, "train")
    with pytest.raises(ShardMismatchError, match=f"{m['tokenizer_fingerprint']}.*0123456789abcdef"):
        open_shards(built, "train", expected_fingerprint="0123456789abcdef")
    with pytest.raises(FileNotFoundError, match="corpus directory not found"):
        open_shards(built.parent / "missing")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        open_shards(built.parent)
    with pytest.raises(ValueError, match="no split 'test'"):
        open_shards(built, "test")
