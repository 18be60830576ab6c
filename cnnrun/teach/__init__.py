"""The teaching commands: small experiments on a single picture, as the course does them.

- `kernel-demo` (`cnnrun.teach.kernels`): convolve a photo with edge, blur and sharpen kernels, show what padding,
  stride and pooling do to its size;
- `image-info` (`cnnrun.teach.channels`): a picture's shape, dtype, value range and channels, one panel each;
- `augment-preview` (`cnnrun.teach.augment`): one picture through the experiment's augmentation;
- `shape_math`: the arithmetic of convolution and pooling, shared with `cnnrun inspect` and `conv-shape`;
- `images`: the one image reader and figure writer they share.

Nothing here is imported when the CLI starts; each command imports its module inside its function.

May import: the base modules, `config`, `data`. Nothing above.
"""
