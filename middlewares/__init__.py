"""insultbench: one InsultService and one InsultFilter on four middlewares.

``middlewares.core`` holds the domain rules, ``middlewares.contract`` the interface every
middleware implements, and ``middlewares/<name>/`` one package per transport.
"""
