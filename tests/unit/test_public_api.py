import somprobe


def test_every_public_name_resolves():
    for name in somprobe.__all__:
        assert getattr(somprobe, name) is not None, name


def test_errors_share_one_base():
    for name in somprobe.__all__:
        obj = getattr(somprobe, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, somprobe.SomprobeError), name
