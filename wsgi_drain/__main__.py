from wsgi_drain.cli import main

main()
