from tcptune.cli import main

main()
