"""``mlm-export form``: a local web form to edit an MLM Item, generated from the JSON Schemas, validated live.

:mod:`.schema_form` makes the form's field tree from the schemas, :mod:`.session` checks and saves the Item,
:mod:`.server` serves both (127.0.0.1, random token), ``static/`` holds the page (vanilla JS/CSS, offline).
"""
