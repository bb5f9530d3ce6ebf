"""Write the benign half of the scanner corpus: real files made by the real libraries.

Run once, in a scratch virtualenv with the libraries that write them (they are not
dependencies of ocimodel or of its tests; the files are committed as bytes)::

    python -m venv /tmp/corpus && /tmp/corpus/bin/pip install torch==2.13.0 scikit-learn joblib \
        numpy safetensors onnx gguf
    /tmp/corpus/bin/python benchmarks/make_scan_corpus.py tests/data/scan/benign

Every file is small (tiny models on tiny data) and deterministic where the library allows.
The malicious half is built byte by byte in tests/scan_corpus.py.
"""

from __future__ import annotations

import gzip
import json
import pickle
import random
import sys
import tarfile
import zipfile
from pathlib import Path


def main(out: Path) -> None:
    import joblib
    import numpy as np
    import torch
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    out.mkdir(parents=True, exist_ok=True)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    X, y = load_iris(return_X_y=True)

    # scikit-learn / joblib: the ways people save estimators
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), out / "sklearn_logreg.joblib")
    joblib.dump(RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(X, y), out / "sklearn_forest.joblib")
    joblib.dump(make_pipeline(StandardScaler(), SVC()).fit(X, y), out / "sklearn_pipeline_zlib.joblib", compress=3)
    joblib.dump(DecisionTreeRegressor(max_depth=3).fit(X, y), out / "sklearn_tree_bz2.joblib", compress=("bz2", 3))
    joblib.dump(MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0).fit(X, y),
                out / "sklearn_mlp_xz.joblib", compress=("xz", 3))
    joblib.dump(KMeans(n_clusters=3, n_init=1, random_state=0).fit(X), out / "sklearn_kmeans_gzip.joblib.gz", compress=("gzip", 3))
    texts = ["the cat sat", "a dog ran", "the dog sat", "a cat ran"] * 3
    joblib.dump(Pipeline([("tfidf", TfidfVectorizer()), ("nb", MultinomialNB())]).fit(texts, [0, 1, 0, 1] * 3),
                out / "sklearn_text_lzma.joblib", compress=("lzma", 3))
    with open(out / "sklearn_hgb.pkl", "wb") as f:
        pickle.dump(HistGradientBoostingClassifier(max_iter=3).fit(X, y), f, protocol=5)
    columns = ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), [0]), ("scale", StandardScaler(), [1])])
    with open(out / "sklearn_columns_p2.pkl", "wb") as f:
        pickle.dump(columns.fit(np.array([[0, 1.0], [1, 2.0], [2, 3.0]])), f, protocol=2)

    # PyTorch: zip and legacy checkpoints, a whole nn model, RNG state
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    torch.save(net.state_dict(), out / "torch_state_dict.pt")
    torch.save(net.state_dict(), out / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 3, "model": net.state_dict(), "optimizer": optimizer.state_dict(), "loss": 0.25,
                "hyper_parameters": {"lr": 1e-3, "layers": [4, 3, 2]}}, out / "torch_checkpoint.ckpt")
    torch.save(net, out / "torch_whole_model.pth")
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()},
               out / "rng_state.pth")
    torch.save({"w": torch.zeros(3, dtype=torch.float16), "i": torch.arange(4), "b": torch.ones(2, dtype=torch.bool)},
               out / "torch_dtypes.pth.tar")
    torch.save(net.state_dict(), out / "torch_legacy_p4.pt", _use_new_zipfile_serialization=False, pickle_protocol=4)

    # numpy
    np.save(out / "array_f32.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(out / "array_structured.npy", np.zeros(3, dtype=[("x", "<f8"), ("n", "<i4"), ("s", "S4")]))
    np.save(out / "array_strings_object.npy", np.array(["a", "bc", None], dtype=object), allow_pickle=True)
    np.savez_compressed(out / "arrays.npz", a=np.arange(5), b=np.eye(2))
    with open(out / "ndarray_p2.pkl", "wb") as f:
        pickle.dump({"w": np.ones((2, 2)), "n": np.int64(3), "dt": np.dtype("f4")}, f, protocol=2)
    with open(out / "ndarray_p5.pickle", "wb") as f:
        pickle.dump([np.arange(6, dtype=np.int16), np.float64(0.5)], f, protocol=5)
    joblib.dump({"embeddings": np.ones((4, 3)), "labels": np.array(["x", "y", "z", "w"], dtype=object)},
                out / "embeddings.joblib")

    # formats that cannot carry code
    from safetensors.numpy import save_file

    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(out / "model.safetensors"))
    import gguf

    writer = gguf.GGUFWriter(str(out / "model.gguf"), "llama")
    writer.add_block_count(1)
    writer.add_tensor("w", np.ones((2, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    onnx.save(helper.make_model(graph), str(out / "model.onnx"))
    (out / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
                                                                               "merges": ["a b"]}}))
    (out / "config.json").write_text(json.dumps({"architectures": ["Net"], "hidden_size": 8, "torch_dtype": "float32"}))
    (out / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\ncat\n")
    (out / "README.md").write_text("# tiny model\n\nFor tests.\n")

    # plain pickles and archives of them
    with open(out / "plain_dict_p0.pkl", "wb") as f:
        pickle.dump({"classes": ["a", "b"], "weights": [0.5, 1.5], "meta": {"v": 1, "ok": True, "t": (1, 2)}}, f, protocol=0)
    with zipfile.ZipFile(out / "bundle.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(out / "plain_dict_p0.pkl", "model/state.pkl")
        z.write(out / "config.json", "model/config.json")
    with tarfile.open(out / "arrays.tar", "w") as t:
        t.add(out / "array_f32.npy", "array_f32.npy")
        t.add(out / "sklearn_logreg.joblib", "sklearn_logreg.joblib")
    (out / "vocab_p4.pkl.gz").write_bytes(gzip.compress(pickle.dumps({f"tok{i}": i for i in range(50)}, protocol=4), mtime=0))


def foreign() -> None:
    """List the names the scanner's class rule would allow in scikit-learn and torch.nn.modules
    that are really imported from another package (to review CLASS_PACKAGE_FOREIGN)."""
    import importlib
    import pkgutil
    import warnings

    from ocimodel.scanner.rules import _class_rule

    warnings.filterwarnings("ignore")
    for package in ("sklearn", "torch.nn.modules"):
        root = importlib.import_module(package)
        for info in [None, *pkgutil.walk_packages(root.__path__, package + ".")]:
            name = package if info is None else info.name
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional dependencies missing
                continue
            for attr, obj in vars(module).items():
                origin = str(getattr(obj, "__module__", None) or type(obj).__module__)
                if _class_rule(name, attr) and not origin.startswith(package.split(".")[0]):
                    print(f"{name}.{attr} -> {origin}.{getattr(obj, '__qualname__', attr)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--foreign"]:
        foreign()
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/scan/benign"))
