"""``notebook.show_source``: the library's source as a chapter shows it."""
import pytest

from maskrcnn_edu import masks
from maskrcnn_edu.notebook import SHORT_RUN_VARIABLE, full_or_short, show_source


def sample(x, y):
    """A docstring the chapter leaves out.

    Over two lines."""
    a = x + 1
    b = y + 2
    c = a * b
    return c


def test_the_docstring_is_left_out_and_the_title_names_the_file_and_lines():
    shown = show_source(sample)
    assert shown.text == "def sample(x, y):\n    a = x + 1\n    b = y + 2\n    c = a * b\n    return c"
    assert shown.title.startswith("test_notebook.py · sample (lines ")
    assert "docstring" in show_source(sample, docstring=True).text


def test_start_and_stop_keep_the_lines_that_carry_the_idea():
    shown = show_source(sample, start="b =", stop="c =")
    assert shown.text == "def sample(x, y):\n    ...\n    b = y + 2\n    c = a * b\n    ..."


def test_a_library_function_is_titled_by_its_path_in_the_package_and_highlighted():
    shown = show_source(masks.claimed_share)
    assert shown.title.startswith("maskrcnn_edu/masks.py · claimed_share (lines ")
    assert "<span" in shown._repr_html_() and "def" in repr(shown)


def test_too_long_a_printout_or_a_missing_line_is_an_error():
    with pytest.raises(ValueError, match="more than 3"):
        show_source(sample, max_lines=3)
    with pytest.raises(ValueError, match="no line contains 'zzz'"):
        show_source(sample, start="zzz")


def test_full_or_short_is_the_full_size_unless_the_books_checks_ask_for_a_short_run(monkeypatch):
    monkeypatch.delenv(SHORT_RUN_VARIABLE, raising=False)
    assert full_or_short(200, short=40) == 200
    monkeypatch.setenv(SHORT_RUN_VARIABLE, "1")
    assert full_or_short(200, short=40) == 40
    monkeypatch.setenv(SHORT_RUN_VARIABLE, "0")
    assert full_or_short(200, short=40) == 200
