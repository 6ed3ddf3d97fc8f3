"""The request pipeline: authenticate → route → forward → account."""
