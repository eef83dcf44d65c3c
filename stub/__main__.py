from stub.main import main

main()
