from stub.lazylibs import install_finder

install_finder()  # first: any import may need the libraries that are unpacked on demand

from stub.main import main  # noqa: E402

main()
