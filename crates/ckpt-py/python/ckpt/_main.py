"""The `ckpt` console script of the wheel: the Rust command, in this process."""

import sys

from ckpt import _ckpt


def main() -> None:
    sys.stdout.flush()
    sys.exit(_ckpt.main(["ckpt", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
