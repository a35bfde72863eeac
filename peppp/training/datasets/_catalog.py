"""The local meta-dataset: its fixed list of offline task names, less those whose files are not here."""

from __future__ import annotations

from peppp.training.datasets._names import parse_dataset
from peppp.training.datasets._sources import source_installed

# Built-in sources whose files do not come with peppp's own dependencies.
_OPTIONAL_SOURCES = ("fashion-mnist", "animal-mnist")

# The local meta-dataset: class subsets (as the paper derived its 87 datasets from class subsets) and
# cheap variants (resolution, training-set size) of the four offline sets. Training sets stay at
# 5000 images or fewer so that one cell costs minutes, not hours, on a CPU.
_OFFLINE_TASKS = (
    # digits: 8 x 8, 1438 training images at the default test fraction
    "digits",
    "digits[0-4]",
    "digits[5-9]",
    "digits[0,2,4,6,8]",
    "digits[1,3,5,7,9]",
    "digits[3,5,8,9]",
    "digits[1,4,7]",
    "digits@16px",
    "digits:n=400",
    "digits[0-4]@16px",
    # mnist-5k: 28 x 28, 4000 training images at the default test fraction
    "mnist-5k",
    "mnist-5k@14px",
    "mnist-5k@8px",
    "mnist-5k:n=1000",
    "mnist-5k@14px:n=1000",
    "mnist-5k[0-4]",
    "mnist-5k[5-9]",
    "mnist-5k[0,2,4,6,8]@14px",
    "mnist-5k[1,3,5,7,9]@14px",
    "mnist-5k[3,5,8]@14px",
    "mnist-5k[4,7,9]@14px",
    "mnist-5k[0,6,8,9]@14px",
    # fashion-mnist (0 T-shirt, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker,
    # 8 bag, 9 ankle boot): 28 x 28, official test split of 1000 per class
    "fashion-mnist:n=1000",
    "fashion-mnist:n=5000",
    "fashion-mnist@14px:n=5000",
    "fashion-mnist@8px:n=5000",
    "fashion-mnist[0-4]@14px:n=5000",
    "fashion-mnist[5-9]@14px:n=5000",
    "fashion-mnist[0,2,4,6]:n=4000",
    "fashion-mnist[0,2,4,6]@14px:n=4000",
    "fashion-mnist[5,7,9]:n=3000",
    "fashion-mnist[5,7,9]@14px:n=3000",
    "fashion-mnist[1,3,8]@14px:n=3000",
    "fashion-mnist[0,6]@14px:n=2000",
    "fashion-mnist[2,4]@14px:n=2000",
    "fashion-mnist[0,1,5,8]@14px:n=2000",
    # animal-mnist: 28 x 28 silhouettes, 8000 training images at the default test fraction
    "animal-mnist:n=4000",
    "animal-mnist@14px:n=4000",
    "animal-mnist[0-4]@14px",
    "animal-mnist[5-9]@14px",
    "animal-mnist[2,4,7,8]@14px",
)


def list_tasks(*, installed_only: bool = False) -> list[str]:
    """Distinct offline task names for a local meta-dataset (canonical names, at least 30).

    The full list is the meta-dataset's fixed set of rows. installed_only drops the tasks of the
    optional sources (Fashion-MNIST, Animal-MNIST) whose files cannot be found here.
    """
    if not installed_only:
        return list(_OFFLINE_TASKS)
    missing = {source for source in _OPTIONAL_SOURCES if not source_installed(source)}
    return [t for t in _OFFLINE_TASKS if parse_dataset(t).source not in missing]
