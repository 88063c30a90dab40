from meshlab_lab.dns.server import main

main()
