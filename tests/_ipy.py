"""The one IPython shell a test process may have (IPython allows a single
InteractiveShell singleton): shared by the magic tests and the docs tests."""


def shell():
    from IPython.testing import globalipapp

    s = globalipapp.start_ipython()  # returns None after the first call
    if s is None:
        s = globalipapp.get_ipython()
    s.run_line_magic("load_ext", "mushin_nb")
    return s
