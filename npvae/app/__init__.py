"""`python -m npvae.app [RUN_DIR | --data PATH] [--preset NAME]`: a local web app in which a
person labels images and trains the model. It sits on top of every other floor and
may import all of them (the query strategies of experiments/active, the training loop, the run
folder); nothing in npvae imports it.

    __main__.py   `python -m npvae.app`: runs command.main
    command.py    the command: flags, checks (one sentence and exit status 2), serve
    server.py     the HTTP server: a small JSON API and the static page, the URL token
    session.py    one open run folder: data, model outputs, the labelling queue, training
    labels.py     labels.csv (index,label,time,source), written atomically at every label
    worker.py     a training round in a worker process: warm start, progress.json, outputs
    components.py the Components view: decoded image, usage, majority label per component
    images.py     images in and out: a folder of PNG files, one image as PNG bytes, PCA
    runs.py       the Compare view: the run folders beside the open one
    static/       index.html, app.js, panels.js, app.css (plotly.min.js: from the plotly wheel)
"""
