from safetax.cli import main

main()
