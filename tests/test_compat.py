"""The private parts of other libraries in cifake_hub._compat still exist and behave as the
package expects: when an upgrade changes one, this fails and names the library and version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from cifake_hub import _compat


def _changed(library: str, what: str) -> str:
    return f"{library} {version(library)} changed {what}: update cifake_hub/_compat.py"


def test_huggingface_hub_retry_policy():
    statuses = _compat.hub_retry_statuses()
    assert {429, 500, 502, 503, 504} <= set(statuses), _changed("huggingface_hub", "retries")
    errors = _compat.hub_retry_exceptions()
    assert errors and all(issubclass(e, BaseException) for e in errors), _changed(
        "huggingface_hub", "retried exceptions"
    )


def test_datasets_size_and_fingerprint(small_cifake):
    import datasets

    ds = datasets.load_dataset(str(small_cifake))["train"]
    nbytes = _compat.dataset_nbytes(ds)
    # The images are stored in the table: the estimate is the table's size.
    assert nbytes == pytest.approx(ds.data.nbytes, rel=0.01), _changed("datasets", "nbytes")
    fingerprint = _compat.dataset_fingerprint(ds)
    assert isinstance(fingerprint, str) and len(fingerprint) >= 16, _changed(
        "datasets", "fingerprints"
    )
    assert _compat.dataset_fingerprint(ds.select(range(3))) != fingerprint


def test_datasets_builder_generators(tmp_path):
    import datasets

    class Tiny(datasets.GeneratorBasedBuilder):
        def _info(self):
            return datasets.DatasetInfo(features=datasets.Features({"n": datasets.Value("int32")}))

        def _split_generators(self, dl_manager):
            return [
                datasets.SplitGenerator(name=name, gen_kwargs={"count": count})
                for name, count in (("train", 3), ("test", 2))
            ]

        def _generate_examples(self, count):
            for i in range(count):
                yield i, {"n": i}

    rows = list(_compat.builder_rows(Tiny(cache_dir=str(tmp_path))))
    want = [("train", {"n": i}) for i in range(3)] + [("test", {"n": i}) for i in range(2)]
    assert rows == want, _changed("datasets", "builders")
