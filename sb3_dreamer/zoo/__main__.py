from sb3_dreamer.zoo import main

main()
