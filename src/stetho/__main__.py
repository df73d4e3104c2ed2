"""``python -m stetho``: the command line; also how torchrun starts each training process
(``torchrun --nproc_per_node=2 -m stetho train CONFIG ...``)."""

from stetho.cli import main

if __name__ == "__main__":
    main()
