"""Image files without TensorFlow: ordered input listing with reasons for what cannot be
an image (:mod:`camjax.files.inputs`), decoding with EXIF orientation, a pixel budget and
antialiased resizing (:mod:`camjax.files.images`), and bounded, ordered read-ahead
(:mod:`camjax.files.prefetch`). Used by extraction (:mod:`camjax.extract`) and by
``camjax.data.folder_iterator``."""
