"""`python -m vitalmatch <stage>`: the same CLI as the `vitalmatch` console script."""

from vitalmatch.cli import main

if __name__ == "__main__":
    main()
