import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python starts the command: one line, no traceback
    print("latentlab: interrupted.", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
