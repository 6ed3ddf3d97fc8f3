from inferhub.cli import main

main()
