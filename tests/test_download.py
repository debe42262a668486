"""The BloodMNIST conversion on a small npz in medmnist's format (these machines are offline)."""

import numpy as np
import pytest

from hematovision_core import data, download


def test_convert_medmnist_npz_writes_split_class_folders(tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "bloodmnist_224.npz"
    np.savez(npz,
             train_images=rng.integers(0, 255, (5, 28, 28, 3), dtype=np.uint8),
             train_labels=np.array([[0], [1], [1], [7], [3]]),
             val_images=rng.integers(0, 255, (2, 28, 28, 3), dtype=np.uint8),
             val_labels=np.array([[4], [5]]),
             test_images=rng.integers(0, 255, (3, 28, 28, 3), dtype=np.uint8),
             test_labels=np.array([[6], [2], [0]]))
    out = tmp_path / "pbc"
    assert download.convert_medmnist_npz(npz, out) == 10
    dataset = data.discover(out)
    assert dataset.has_split_folders
    assert data.class_counts(dataset.in_split("train")) == {"basophil": 1, "eosinophil": 2, "ig": 1, "platelet": 1}
    assert data.class_counts(dataset.in_split("test")) == {"basophil": 1, "erythroblast": 1, "neutrophil": 1}
    written = sorted((out / "train" / "eosinophil").glob("*.png"))
    assert len(written) == 2


def test_download_without_network_or_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(download.urllib.request, "urlopen",
                        lambda *a, **k: (_ for _ in ()).throw(download.urllib.error.URLError("offline")))
    with pytest.raises(download.DownloadError, match="online"):
        download._fetch("https://example.invalid/x.npz", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_data_cli_reports_download_errors(tmp_path, capsys, monkeypatch):
    def offline(out):
        raise download.DownloadError("Could not download: no network. Is this machine online?")

    monkeypatch.setattr(download, "download_blood_cells", offline)
    assert data.main(["download", "blood-cells", "--out", str(tmp_path / "bc")]) == 1
    assert "online" in capsys.readouterr().err


def test_the_download_command_names_what_the_command_accepts():
    """A model's data folder may be `blood-cells/TRAIN`; the command downloads `blood-cells`."""
    assert download.download_command("pbc") == "python -m hematovision_core.data download pbc"
    assert download.download_command("blood-cells/TRAIN") == \
        "python -m hematovision_core.data download blood-cells"
    assert download.download_command("TRAIN") is None  # a folder no command downloads
    assert download.download_command("cells") is None
    with pytest.raises(SystemExit) as exit:  # what the page used to show for the smear model
        data.main(["download", "TRAIN", "--help"])
    assert exit.value.code == 2
    for name in download.DATASETS:  # every name it gives is one `data download` accepts
        with pytest.raises(SystemExit) as exit:
            data.main(["download", name, "--help"])
        assert exit.value.code == 0
