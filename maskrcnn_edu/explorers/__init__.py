"""The chapters' interactive explorers (ipywidgets), one module per chapter.

Each explorer is a plain *view* function of its controls' values, wrapped by one small ipywidgets
shell (``shell.Explorer``). A view function takes the controls' values as keyword arguments and
returns a ``shell.View``: the figure to show and a one-line caption with the numbers that matter.
Tests (and chapters) call the view function directly, or drive an explorer by setting its
controls' ``.value``, as a reader's mouse would; nothing here needs a browser.

``shell`` (the widget shell and the static picture a stored notebook shows); ``stepper`` (00, the
detection stepper, with its stages in ``stepper_stages`` and its images in ``images``); ``roi`` (01);
``anchors`` (02); ``rpn`` (03); ``heads`` (04); ``losses`` (05); ``training`` (06 and 07);
``evaluation`` (08); ``splash`` (09, the colour splash); ``monitor``, ``ablations`` and
``ablation_images`` (10); ``ablation_table`` (the paper's ablations on the shipped recipe, read from
``benchmarks/ablations.py``'s report). The drawings
themselves live in ``maskrcnn_edu.visualize``, which never imports ipywidgets.
"""
