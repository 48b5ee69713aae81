from sb3_dreamer.cli import main

main()
